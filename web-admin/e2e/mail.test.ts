// The users' app (issue 22) against a real `caliop serve`: Bob, whose mail is
// sealed, signs in on the device and reads a message Alice sent him: the
// page fetches it as stored (PGP/MIME, which the server cannot open) and
// decrypts it with the key it unlocked. Every request the page sends is
// recorded: neither the decrypted text, nor Bob's password, nor his
// unlocked key is in any of them. A hostile HTML message renders with no
// script, no handler and no request leaving the page. Bob replies. The
// views pass axe-core and are photographed at laptop and phone width.
//
// On a public instance, Carol signs up through the page: the proof of work
// is solved by the page, she lands in the waiting line while the pool is
// empty, and the page opens her account without a reload when a paid
// invoice (Stripe's signed webhook) credits the pool. A message sent to her
// over SMTP arrives sealed and she reads it decrypted in the page. She
// replies to all: Alice, hosted and at `sealed`, reads the reply decrypted
// in her page, and the copy for elsewhere.test (an MX and a Web Key
// Directory over HTTPS on loopback, remote_domain.py) leaves encrypted to
// the key that domain publishes.
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { join } from "node:path";
import type { Browser, Page, Request } from "playwright-core";
import { encode } from "uqr";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Caliop, RemoteDomain, accessibility, describeViolations, launchBrowser, newPage, pictureOfFailure, screenshots } from "./harness";

const ALICE = { address: "alice@acme.test", password: "alice's long passphrase" };
const BOB = { address: "bob@acme.test", password: "bob's own long passphrase" };
let acmeId: string;
/** The Message-ID of the sealed message Alice sends Bob first. */
let secretMessageId: string;
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

/** Sends to Bob as Alice; answers the sent message's Message-ID header. */
async function deliverFromAlice(body: Record<string, unknown>): Promise<string> {
  const aliceId = whoami(aliceToken).account_id;
  const sent = await caliop.api<{ encrypted_to: string[]; header_message_id: string }>("POST", `/v1/accounts/${aliceId}/messages`, aliceToken, { to: [BOB.address], ...body });
  expect(sent.status).toBe(202);
  return sent.body.header_message_id;
}

/** The account a token signs in as (its `sub` is `account:<uuid>`). */
function whoami(token: string): { account_id: string } {
  const payload = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { sub: string };
  return { account_id: payload.sub.replace(/^account:/, "") };
}

interface Listed {
  items: { id: string; level: string; subject?: string | null; flags: string[]; envelope_from: string; received_at: string; rfc822_size: number }[];
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
  acmeId = tenant.body.id;
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

async function signIn(page: Page, who: { address: string; password: string }, base = caliop.base): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByLabel("Email address").fill(who.address);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Inbox" }).waitFor();
}

/**
 * A signup without a password, finished on the device: the request carried
 * none, the activation ran OPAQUE registration, and neither the password nor
 * the link's secret went out in any request.
 */
function expectPasswordSetOnDevice(sent: { url: string; body: string }[], password: string, linkSecret: string): void {
  const signup = sent.find((r) => r.url.endsWith("/v1/public/signup"));
  expect(JSON.parse(signup!.body)).not.toHaveProperty("password");
  const finish = sent.find((r) => /\/v1\/public\/activations\/[^/]+\/finish$/.test(r.url));
  expect(Object.keys(JSON.parse(finish!.body)).sort()).toEqual(["ksf", "locked_key", "registration_record"]);
  expect(sent.some((r) => r.url.endsWith("/v1/auth/opaque/login/start"))).toBe(true);
  for (const request of sent) {
    expect(request.url + request.body).not.toContain(password);
    expect(request.url + request.body).not.toContain(linkSecret);
  }
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
    expect(html).toMatch(/<title>[^<]*Caliop[^<]*<\/title>/);
    // The page runs under that policy: an image from a plain-http origin is refused.
    const { context, page } = await newPage(browser);
    await page.goto(`${caliop.base}/`);
    await page.getByRole("heading", { name: /Sign in/ }).waitFor();
    const violated = await page.evaluate(
      () =>
        new Promise<string>((resolve) => {
          document.addEventListener("securitypolicyviolation", (e) => resolve(e.effectiveDirective));
          const img = document.createElement("img");
          img.src = "http://127.0.0.1:9/pixel.png";
          document.body.append(img);
          setTimeout(() => resolve("nothing refused"), 3000);
        }),
    );
    expect(violated).toBe("img-src");
    await context.close();
  });

  it("reads a sealed message decrypted in the page, and neither the text nor the key goes to the server", async () => {
    secretMessageId = await deliverFromAlice({ subject: SECRET_SUBJECT, text: `${SECRET_TEXT}\n\nAlice` });
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
    await page.goto(`${caliop.base}/`);
    await page.getByRole("heading", { name: "Sign in to Caliop" }).waitFor();
    await checkView(page, "signin");
    await signIn(page, BOB);
    // The list reads the sealed message here to show its subject: the server has only ciphertext.
    const row = page.getByTestId("message-row").first();
    await expect.poll(() => row.textContent()).toContain(SECRET_SUBJECT);
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
    // What this device keeps of it (the index the list and search use) is encrypted.
    const kept = await page.evaluate(
      () =>
        new Promise<string>((resolve) => {
          const opened = indexedDB.open("caliop-mail-index");
          opened.onsuccess = () => {
            const all = opened.result.transaction("headers").objectStore("headers").getAll();
            all.onsuccess = () =>
              resolve(all.result.map((r: { data: ArrayBuffer }) => new TextDecoder("latin1").decode(r.data)).join("|") + `|${all.result.length}`);
          };
        }),
    );
    expect(kept.endsWith("|1")).toBe(true);
    expect(kept).not.toContain("Quarterly");

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
    // A reload (on the message's page) forgets the unlocked key: the page asks for the password to open it again, here.
    await page.reload();
    await page.getByRole("heading", { name: "Unlock your key" }).waitFor();
    await page.getByLabel("Password").fill(BOB.password);
    await page.getByRole("button", { name: "Unlock" }).click();
    await expect(page.getByTestId("body").textContent()).resolves.toContain(SECRET_TEXT);
    for (const request of sent) expect(request.url + request.body).not.toContain(BOB.password);
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
    const newest = [...(await waitForMessages(2))].sort((x, y) => y.received_at.localeCompare(x.received_at))[0]!;
    await page.locator(`a[href$="/${newest.id}"]`).click();
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
    const sent = record(page);
    await signIn(page, BOB);
    await page.getByTestId("message-row").filter({ hasText: SECRET_SUBJECT }).locator("a").click();
    await page.getByRole("heading", { name: SECRET_SUBJECT }).waitFor();
    await page.getByRole("link", { name: "Reply", exact: true }).click();
    await page.getByRole("heading", { name: "Reply" }).waitFor();
    await expect(page.getByLabel("To", { exact: true }).inputValue()).resolves.toBe(ALICE.address);
    await expect(page.getByLabel("Subject").inputValue()).resolves.toBe(`Re: ${SECRET_SUBJECT}`);
    await expect(page.getByLabel("Message").inputValue()).resolves.toContain(`> ${SECRET_TEXT}`);
    // Alice is hosted here: her key is found before sending.
    await expect.poll(() => page.getByTestId("key-status").first().textContent()).toContain("will be encrypted to their key");
    await checkView(page, "compose");
    await page.getByLabel("Message").press("Control+Home");
    await page.getByLabel("Message").pressSequentially("Agreed.");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByTestId("sent").waitFor();
    // The reply threads: it answers the sealed original's Message-ID, read from its decrypted headers.
    expect(secretMessageId).toMatch(/^<.+@.+>$/);
    const submitted = JSON.parse(sent.find((r) => r.url.endsWith(`/v1/accounts/${bobId}/messages`))!.body) as { in_reply_to?: string; references?: string[] };
    expect(submitted.in_reply_to).toBe(secretMessageId);
    expect(submitted.references).toEqual([secretMessageId]);
    const aliceId = whoami(aliceToken).account_id;
    for (let i = 0; ; i++) {
      const inbox = await caliop.api<Listed>("GET", `/v1/accounts/${aliceId}/messages?folder=inbox`, aliceToken);
      if (inbox.body.items.some((m) => m.envelope_from === BOB.address)) break;
      if (i > 50) throw new Error("the reply never reached Alice");
      await new Promise((r) => setTimeout(r, 200));
    }
    await context.close();
  });

  it("searches on the device, flags, files and deletes", async () => {
    const { context, page } = await newPage(browser);
    const sent = record(page);
    await signIn(page, BOB);
    const rows = page.getByTestId("message-row");
    await expect.poll(() => rows.count()).toBe(2);
    const search = page.getByRole("searchbox", { name: "Search senders and subjects" });
    await search.fill("alice@acme");
    await expect.poll(() => rows.count()).toBe(2);
    // Sealed subjects are searched as this device read them.
    await search.fill("quarterly");
    await expect.poll(() => rows.count()).toBe(1);
    await search.fill("no such words");
    await expect.poll(() => page.getByText("No messages in this folder.").count()).toBe(1);
    await search.fill("");
    const inbox = (await caliop.api<Listed>("GET", `/v1/accounts/${bobId}/messages?folder=inbox`, bobToken)).body.items;
    // The first message Alice sent is the sealed one; the second, the hostile newsletter.
    const [secret, hostile] = [...inbox].sort((x, y) => x.received_at.localeCompare(y.received_at)) as [Listed["items"][number], Listed["items"][number]];
    // The list asks the server for the newest first (no walk through every page), and shows them so.
    const listings = sent.filter((r) => r.url.includes(`/v1/accounts/${bobId}/messages?`));
    expect(listings.length).toBeGreaterThan(0);
    for (const r of listings) expect(new URL(r.url).searchParams.get("order")).toBe("newest");
    await expect.poll(() => rows.first().locator("a").getAttribute("href")).toMatch(new RegExp(`/${hostile.id}$`));
    // What was searched never left the page.
    for (const request of sent) expect(request.url + request.body).not.toContain("quarterly");
    await search.fill("");

    // Flag from the list.
    const hostileRow = page.locator("li", { has: page.locator(`a[href$="/${hostile.id}"]`) });
    await hostileRow.getByRole("button", { name: /^Flag/ }).click();
    await expect.poll(async () => (await caliop.api<{ flags: string[] }>("GET", `/v1/messages/${hostile.id}`, bobToken)).body.flags).toContain("flagged");
    await expect.poll(() => hostileRow.getByRole("button", { name: /^Flag/ }).getAttribute("aria-pressed")).toBe("true");

    // Move to Archive, then delete: to Trash, then for good.
    await page.locator(`a[href$="/${secret.id}"]`).click();
    await page.getByRole("heading", { name: SECRET_SUBJECT }).waitFor();
    await page.getByLabel("Move to…").selectOption({ label: "Archive" });
    await page.getByRole("button", { name: "Move", exact: true }).click();
    await page.getByRole("heading", { name: "Inbox" }).waitFor();
    await expect.poll(async () => (await caliop.api<{ folder: string }>("GET", `/v1/messages/${secret.id}`, bobToken)).body.folder).toBe("archive");
    await page.getByRole("link", { name: "Archive" }).click();
    await page.locator(`a[href$="/${secret.id}"]`).click();
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("heading", { name: "Archive" }).waitFor();
    await expect.poll(async () => (await caliop.api<{ folder: string }>("GET", `/v1/messages/${secret.id}`, bobToken)).body.folder).toBe("trash");
    await page.getByRole("link", { name: "Trash" }).click();
    await page.locator(`a[href$="/${secret.id}"]`).click();
    await page.getByRole("button", { name: "Delete for good" }).click();
    await page.getByRole("heading", { name: "Trash" }).waitFor();
    await expect.poll(async () => (await caliop.api("GET", `/v1/messages/${secret.id}`, bobToken)).status).toBe(404);
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
    // Only the levels at or above the tenant's floor are offered.
    await expect(page.getByRole("radio", { name: /^Standard/ }).count()).resolves.toBe(1);
    await expect(page.getByTestId("level-floor").count()).resolves.toBe(0);
    const policy = (await caliop.api<{ policy: Record<string, unknown> }>("GET", `/v1/tenants/${acmeId}`, caliop.operatorToken())).body.policy;
    expect((await caliop.api("PATCH", `/v1/tenants/${acmeId}`, caliop.operatorToken(), { policy: { ...policy, min_level: "sealed" } })).status).toBe(200);
    await page.reload();
    await page.getByRole("radio", { name: /^Sealed/ }).waitFor();
    await expect(page.getByRole("radio", { name: /^Standard/ }).count()).resolves.toBe(0);
    await expect(page.getByTestId("level-floor").textContent()).resolves.toContain("at least Sealed");
    expect((await caliop.api("PATCH", `/v1/tenants/${acmeId}`, caliop.operatorToken(), { policy })).status).toBe(200);
    // The recovery address: never the account's own, set, then removed.
    await expect(page.getByTestId("recovery-current").textContent()).resolves.toBe("No recovery address is set.");
    const recovery = page.getByLabel("Another address of yours");
    await recovery.fill(BOB.address);
    await page.getByRole("form", { name: "Recovery address" }).getByRole("button", { name: "Save" }).click();
    await page.getByText("Choose another address than this account's own.").waitFor();
    await recovery.fill("bob.home@elsewhere.test");
    await page.getByRole("form", { name: "Recovery address" }).getByRole("button", { name: "Save" }).click();
    await page.getByText("Recovery address set to bob.home@elsewhere.test.").waitFor();
    await expect.poll(async () => (await caliop.api<{ recovery_address: string | null }>("GET", `/v1/accounts/${bobId}`, bobToken)).body.recovery_address).toBe("bob.home@elsewhere.test");
    await expect.poll(() => page.getByTestId("recovery-current").textContent()).toBe("Now: bob.home@elsewhere.test.");
    await page.getByRole("button", { name: "Remove it" }).click();
    await page.getByText("Recovery address removed.").waitFor();
    await expect.poll(async () => (await caliop.api<{ recovery_address: string | null }>("GET", `/v1/accounts/${bobId}`, bobToken)).body.recovery_address ?? null).toBeNull();
    await page.getByTestId("client-settings").waitFor();
    await expect(page.getByTestId("client-settings").textContent()).resolves.toContain("mx.caliop.test");
    // The QR code for phones holds the settings autoconfig publishes, as text: its dark modules are those of that text.
    const xml = await (await fetch(`${caliop.base}/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=${encodeURIComponent(BOB.address)}`)).text();
    const server = (tag: string) => {
      const block = xml.match(new RegExp(`<${tag}[^>]*>([\\s\\S]*?)</${tag}>`))![1]!;
      const field = (name: string) => block.match(new RegExp(`<${name}>([^<]*)</${name}>`))![1]!;
      return `${field("hostname")} port ${field("port")} ${field("socketType")}`;
    };
    const expected = `IMAP: ${server("incomingServer")}\nSMTP: ${server("outgoingServer")}\nUser: ${BOB.address}`;
    expect(expected).toContain("mx.caliop.test port ");
    const drawn = (await page.getByRole("img", { name: "QR code of these mail settings" }).locator("path").getAttribute("d"))!;
    const dark = new Set([...drawn.matchAll(/M(\d+) (\d+)h1v1h-1z/g)].map((m) => `${m[1]},${m[2]}`));
    const want = new Set<string>();
    encode(expected, { ecc: "M", border: 4 }).data.forEach((row, y) => row.forEach((on, x) => on && want.add(`${x},${y}`)));
    expect(dark.size).toBeGreaterThan(100);
    expect([...dark].sort()).toEqual([...want].sort());
    await page.getByLabel("Which app or device").fill("Thunderbird at home");
    await page.getByRole("button", { name: "Make an app password" }).click();
    const secret = (await page.getByTestId("app-password").textContent())!.trim();
    expect(secret.length).toBeGreaterThan(10);
    await page.getByRole("button", { name: "I have stored it" }).click();
    const listed = await caliop.api<{ items: { name: string }[] }>("GET", `/v1/accounts/${bobId}/app-passwords`, bobToken);
    expect(listed.body.items.map((p) => p.name)).toEqual(["Thunderbird at home"]);
    // Bob's own mail rules, with the admin app's rule editor.
    await page.getByRole("heading", { name: "Your mail rules" }).waitFor();
    await page.getByLabel("Text", { exact: true }).first().fill("invoice");
    await page.getByLabel("Folder", { exact: true }).first().fill("Invoices");
    await page.getByRole("button", { name: "Save and turn on" }).click();
    await page.getByText("Saved: the rules apply").waitFor();
    const scripts = await caliop.api<{ items: { name: string; content: string; active: boolean }[] }>("GET", `/v1/accounts/${bobId}/sieve`, bobToken);
    const active = scripts.body.items.find((s) => s.active);
    expect(active?.content).toContain('fileinto "Invoices"');
    // Signing out everywhere else ends the other sessions (this test's own token among them), not the page's.
    const other = await caliop.token(BOB.address, BOB.password);
    expect((await caliop.api("GET", `/v1/accounts/${bobId}`, other)).status).toBe(200);
    await page.getByRole("button", { name: "Sign out everywhere else" }).click();
    await page.getByText("Every other session has ended").waitFor();
    expect((await caliop.api("GET", `/v1/accounts/${bobId}`, other)).status).toBe(401);
    await page.getByRole("link", { name: /Inbox/ }).first().click();
    await page.getByRole("heading", { name: "Inbox" }).waitFor();
    await expect.poll(() => page.getByTestId("message-row").count()).toBeGreaterThan(0);
    bobToken = await caliop.token(BOB.address, BOB.password);
    await checkView(page, "settings");
    await context.close();
  });

  it("downloads an attachment, and forwards it with the attachment", async () => {
    const report = "Figures for the quarter\n".repeat(200);
    const inboxIds = async () => (await caliop.api<Listed>("GET", `/v1/accounts/${bobId}/messages?folder=inbox`, bobToken)).body.items.map((m) => m.id);
    const before = new Set(await inboxIds());
    await deliverFromAlice({
      subject: "The report",
      text: "Attached.",
      attachments: [{ filename: "report.txt", media_type: "text/plain", content_base64: Buffer.from(report).toString("base64") }],
    });
    // The one that was not there before, whatever else the inbox holds.
    let newest: { id: string } | undefined;
    for (let i = 0; i < 100 && !newest; i++) {
      const id = (await inboxIds()).find((m) => !before.has(m));
      if (id) newest = { id };
      else await new Promise((r) => setTimeout(r, 200));
    }
    const { context, page } = await newPage(browser);
    await signIn(page, BOB);
    await page.locator(`a[href$="/${newest!.id}"]`).click();
    await page.getByRole("heading", { name: "The report" }).waitFor();
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "report.txt" }).click()]);
    expect(download.suggestedFilename()).toBe("report.txt");
    const path = await download.path();
    expect(readFileSync(path!, "utf8")).toBe(report);
    await page.getByRole("link", { name: "Forward" }).click();
    await page.getByRole("heading", { name: "Forward" }).waitFor();
    await expect(page.getByLabel("Subject").inputValue()).resolves.toBe("Fwd: The report");
    await expect(page.locator("ul.files").textContent()).resolves.toContain("report.txt");
    await page.getByLabel("To", { exact: true }).fill(ALICE.address);
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByTestId("sent").waitFor();
    const aliceId = whoami(aliceToken).account_id;
    let forwarded: Listed["items"][number] | undefined;
    for (let i = 0; i < 50 && !forwarded; i++) {
      const items = (await caliop.api<Listed>("GET", `/v1/accounts/${aliceId}/messages?folder=inbox`, aliceToken)).body.items;
      // The reply came first; the forward, carrying the report, is the larger one after it.
      forwarded = items.filter((m) => m.envelope_from === BOB.address).find((m) => m.rfc822_size > report.length);
      if (!forwarded) await new Promise((r) => setTimeout(r, 200));
    }
    expect(forwarded, "the forward with its attachment reached Alice").toBeDefined();
    await context.close();
  });

  it("changes the level of new mail, in French", async () => {
    const { context, page } = await newPage(browser, "fr-FR");
    await page.goto(`${caliop.base}/`);
    await page.getByRole("heading", { name: "Connexion à Caliop" }).waitFor();
    await page.getByLabel("Adresse e-mail").fill(BOB.address);
    await page.getByLabel("Mot de passe").fill(BOB.password);
    await page.getByRole("button", { name: "Se connecter" }).click();
    await page.getByRole("heading", { name: "Boîte de réception" }).waitFor();
    await page.getByRole("link", { name: "Réglages" }).click();
    await page.getByRole("radio", { name: /^Dispersé/ }).check();
    await page.getByRole("form", { name: /confidentialité/ }).getByRole("button", { name: "Enregistrer", exact: true }).click();
    await page.getByText("Enregistré.").waitFor();
    const account = await caliop.api<{ level: string }>("GET", `/v1/accounts/${bobId}`, bobToken);
    expect(account.body.level).toBe("dispersed");
    await checkView(page, "settings-fr");
    await context.close();
  });

  it("at end to end, encrypts in the page for hosted recipients and refuses, with the reason, those without a key", async () => {
    expect((await caliop.api("PATCH", `/v1/accounts/${bobId}`, bobToken, { level: "end-to-end" })).status).toBe(200);
    const { context, page } = await newPage(browser);
    const sent = record(page);
    await signIn(page, BOB);
    await page.getByRole("link", { name: "Write" }).click();
    await page.getByText("encrypted here, in your browser").waitFor();
    // Someone with no key known here: refused before anything is submitted.
    await page.getByLabel("To", { exact: true }).fill("zed@elsewhere.test");
    await expect.poll(() => page.getByTestId("key-status").first().textContent()).toContain("cannot be sent to them at end to end");
    await page.getByLabel("Subject").fill("Nope");
    await page.getByLabel("Message").fill("not for zed");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByText("no key is known here for zed@elsewhere.test").waitFor();
    expect(sent.filter((r) => r.url.includes("/messages") && r.body.length > 0)).toEqual([]);
    // Alice is hosted here: the message is encrypted in the page to her key (and Bob's own).
    const aliceId = whoami(aliceToken).account_id;
    const fromBob = async () =>
      (await caliop.api<Listed>("GET", `/v1/accounts/${aliceId}/messages?folder=inbox`, aliceToken)).body.items
        .filter((m) => m.envelope_from === BOB.address)
        .sort((x, y) => y.received_at.localeCompare(x.received_at));
    const before = (await fromBob()).length;
    await page.getByLabel("To", { exact: true }).fill(ALICE.address);
    await expect.poll(() => page.getByTestId("key-status").first().textContent()).toContain("will be encrypted to their key");
    await page.getByLabel("Subject").fill("Sealed by my own browser");
    await page.getByLabel("Message").fill("The courier arrives at 0615.");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByTestId("sent").waitFor();
    const submitted = sent.find((r) => r.url.includes("/messages?require_encryption=true"));
    expect(submitted?.body).toContain("-----BEGIN PGP MESSAGE-----");
    for (const request of sent) {
      expect(request.url + request.body).not.toContain("0615");
      expect(request.url + request.body).not.toContain("Sealed by my own browser");
    }
    // Alice's copy is what left Bob's browser: her key opens it.
    let copy: Listed["items"][number] | undefined;
    for (let i = 0; i < 50 && !copy; i++) {
      const now = await fromBob();
      if (now.length > before) copy = now[0];
      else await new Promise((r) => setTimeout(r, 200));
    }
    const raw = await (await fetch(`${caliop.base}/v1/messages/${copy!.id}/raw`, { headers: { Authorization: `Bearer ${aliceToken}` } })).text();
    expect(raw).not.toContain("0615");
    const openpgp = await import("openpgp");
    const aliceKey = await openpgp.readPrivateKey({ armoredKey: caliop.unlockKey(ALICE.address, ALICE.password) });
    const armored = /-----BEGIN PGP MESSAGE-----[\s\S]*?-----END PGP MESSAGE-----/.exec(raw)![0];
    const { data } = await openpgp.decrypt({ message: await openpgp.readMessage({ armoredMessage: armored }), decryptionKeys: aliceKey });
    expect(String(data)).toContain("Subject: Sealed by my own browser");
    expect(String(data)).toContain(Buffer.from("The courier arrives at 0615.").toString("base64").slice(0, 20));
    await context.close();
  });

  it("keeps a draft sealed to the account's own key, and sends it later", async () => {
    // Bob is at end to end since the test above: the draft is encrypted in the page.
    const { context, page } = await newPage(browser);
    const sent = record(page);
    await signIn(page, BOB);
    await page.getByRole("link", { name: "Write" }).click();
    await page.getByLabel("To", { exact: true }).fill(ALICE.address);
    await page.getByLabel("Subject").fill("Unfinished thoughts");
    await page.getByLabel("Message").fill("The first half of 4471-LARCH");
    await page.getByRole("button", { name: "Save draft" }).click();
    await expect.poll(() => page.getByTestId("draft-status").textContent()).toContain("Draft saved");
    const drafts = async () => (await caliop.api<Listed>("GET", `/v1/accounts/${bobId}/messages?folder=drafts`, bobToken)).body.items;
    const [kept] = await drafts();
    expect(kept!.flags).toContain("draft");
    const raw = await (await fetch(`${caliop.base}/v1/messages/${kept!.id}/raw`, { headers: { Authorization: `Bearer ${bobToken}` } })).text();
    expect(raw).toContain("-----BEGIN PGP MESSAGE-----");
    expect(raw).not.toContain("4471-LARCH");
    // Saved again: one draft, the newer.
    await page.getByLabel("Message").fill("The first half of 4471-LARCH, and more");
    await page.getByRole("button", { name: "Save draft" }).click();
    await expect.poll(async () => (await drafts()).map((d) => d.id)).not.toContain(kept!.id);
    expect(await drafts()).toHaveLength(1);
    // Later, from Drafts: the page reads it back and sends it; the draft goes.
    await page.getByRole("link", { name: "Drafts" }).click();
    await page.getByTestId("message-row").filter({ hasText: "Unfinished thoughts" }).locator("a").click();
    await page.getByRole("link", { name: "Continue writing" }).click();
    await page.getByRole("heading", { name: "Draft" }).waitFor();
    await expect(page.getByLabel("Subject").inputValue()).resolves.toBe("Unfinished thoughts");
    await expect(page.getByLabel("Message").inputValue()).resolves.toContain("4471-LARCH, and more");
    await expect.poll(() => page.getByTestId("key-status").first().textContent()).toContain("will be encrypted");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByTestId("sent").waitFor();
    await expect.poll(async () => (await drafts()).length).toBe(0);
    for (const request of sent) expect(request.url + request.body).not.toContain("4471-LARCH");
    await context.close();
  });

  it("pages through a mailbox of more than one page, asking the server for the older page only when it is opened", async () => {
    const PAULA = { address: "paula@acme.test", password: "paula's long passphrase" };
    const made = await caliop.api<{ id: string }>("POST", `/v1/tenants/${acmeId}/accounts`, caliop.operatorToken(), { address: PAULA.address, password: PAULA.password, level: "standard" });
    expect(made.status).toBe(201);
    const paulaToken = await caliop.token(PAULA.address, PAULA.password);
    const boxes = await caliop.api<{ id: string; name: string }[]>("GET", `/v1/accounts/${made.body.id}/mailboxes`, paulaToken);
    const inbox = boxes.body.find((b) => b.name === "INBOX")!;
    const start = Date.now() - 60 * 60_000;
    for (let n = 1; n <= 53; n++) {
      const message = `From: News <news@acme.test>\r\nTo: ${PAULA.address}\r\nSubject: Note ${String(n).padStart(2, "0")}\r\nDate: ${new Date(start + n * 60_000).toUTCString()}\r\n\r\nNumber ${n}.\r\n`;
      const stored = await fetch(`${caliop.base}/v1/mailboxes/${inbox.id}/messages`, { method: "POST", headers: { Authorization: `Bearer ${paulaToken}`, "Content-Type": "message/rfc822" }, body: message });
      expect(stored.status).toBe(201);
    }
    const { context, page } = await newPage(browser);
    const sent = record(page);
    await signIn(page, PAULA);
    const rows = page.getByTestId("message-row");
    await expect.poll(() => rows.count()).toBe(50);
    await expect(rows.first().textContent()).resolves.toContain("Note 53");
    await expect(rows.last().textContent()).resolves.toContain("Note 04");
    const pager = page.getByRole("navigation", { name: "Pages" });
    await expect(pager.textContent()).resolves.toContain("Page 1, older ones follow");
    const listed = () => sent.filter((r) => r.url.includes(`/v1/accounts/${made.body.id}/messages?`) && r.url.includes("cursor="));
    expect(listed()).toEqual([]);
    await pager.getByRole("button", { name: "Older" }).click();
    await expect.poll(() => rows.count()).toBe(3);
    expect(listed().length).toBeGreaterThan(0);
    await expect(rows.allTextContents()).resolves.toEqual([expect.stringContaining("Note 03"), expect.stringContaining("Note 02"), expect.stringContaining("Note 01")]);
    await expect(pager.textContent()).resolves.toContain("Page 2 of 2");
    await expect(pager.getByRole("button", { name: "Older" }).isDisabled()).resolves.toBe(true);
    await pager.getByRole("button", { name: "Newer" }).click();
    await expect.poll(() => rows.first().textContent()).toContain("Note 53");
    await context.close();
  });
});

/** Speaks SMTP to `port` and sends `message` from `from` to `to`. */
async function smtpSend(port: number, from: string, to: string, message: string): Promise<void> {
  const socket = connect(port, "127.0.0.1");
  socket.setEncoding("utf8");
  let buffer = "";
  const waiters: ((line: string) => void)[] = [];
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf("\r\n")) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      // The last line of a reply has a space after its code.
      if (/^\d{3} /.test(line)) waiters.shift()?.(line);
    }
  });
  const reply = () => new Promise<string>((resolve) => waiters.push(resolve));
  const say = async (command: string, expected: string) => {
    const answer = reply();
    socket.write(command + "\r\n");
    const line = await answer;
    expect(line.slice(0, 3), `${command.slice(0, 30)} → ${line}`).toBe(expected);
  };
  expect((await reply()).slice(0, 3)).toBe("220");
  await say("EHLO sender.elsewhere.test", "250");
  await say(`MAIL FROM:<${from}>`, "250");
  await say(`RCPT TO:<${to}>`, "250");
  await say("DATA", "354");
  await say(message.replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..") + "\r\n.", "250");
  await say("QUIT", "221");
  socket.end();
}

/** Where `caliop serve` took its SMTP port (its JSON log says). */
function smtpPort(instance: Caliop): number {
  const log = readFileSync(join(instance.scratchDir(), "caliop.log"), "utf8");
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    const entry = JSON.parse(line) as { fields?: { message?: string; address?: string } };
    if (entry.fields?.message === "SMTP listening") return Number(entry.fields.address!.split(":").pop());
  }
  throw new Error("no SMTP port in the log");
}

const WHSEC = "whsec_e2e_users_app";

/** A Stripe event signed the way Stripe signs them. */
function stripeEvent(type: string, object: Record<string, unknown>): { body: string; signature: string } {
  const created = Math.floor(Date.now() / 1000);
  const body = JSON.stringify({
    id: `evt_${type}_${created}`,
    object: "event",
    api_version: "2025-09-30.clover",
    created,
    data: { object, previous_attributes: {} },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
  });
  const v1 = createHmac("sha256", WHSEC).update(`${created}.${body}`).digest("hex");
  return { body, signature: `t=${created},v1=${v1}` };
}

function paidInvoice(id: string, customer: string, cents: number): Record<string, unknown> {
  const start = Math.floor(Date.now() / 1000) - 86_400;
  return {
    id, object: "invoice", account_country: "FR", account_name: "Operator", amount_due: cents, amount_paid: cents,
    amount_remaining: 0, attempt_count: 1, attempted: true, billing_reason: "subscription_cycle",
    collection_method: "charge_automatically", created: start, currency: "eur", customer, customer_email: "alice@acme.test",
    hosted_invoice_url: `https://invoice.stripe.com/i/acct_1/${id}`, livemode: false,
    lines: { object: "list", has_more: false, total_count: 1, url: `/v1/invoices/${id}/lines`,
      data: [{ id: "il_1", object: "line_item", amount: cents, currency: "eur", period: { start, end: start + 2_592_000 }, quantity: 1 }] },
    number: `E2E-${id.slice(-4)}`, paid: true, period_start: start, period_end: start + 2_592_000, status: "paid", subtotal: cents, total: cents,
  };
}

describe("signing up on the public instance", () => {
  const CAROL = { address: "carol@free.test", password: "carol picks a long passphrase" };
  const ERIN = { address: "erin@free.test", password: "erin keeps her link safe" };
  /** Erin's signup, waiting, from a page she closed: its token, the link's secret, and what that page sent. */
  let erin: { token: string; secret: string; sent: { url: string; body: string }[] };
  let instance: Caliop;
  /** Stripe's API as Caliop calls it to start a checkout: a customer, then a Checkout Session. */
  let stripe: Server;
  let acmeAdmin: string;
  let acmeTenant: string;
  /** elsewhere.test, Dave's domain: its MX and the key directory publishing his key. */
  let elsewhere: RemoteDomain;
  let daveKey: import("openpgp").PrivateKey;

  beforeAll(async () => {
    const openpgp = await import("openpgp");
    elsewhere = await RemoteDomain.start("elsewhere.test");
    daveKey = (await openpgp.generateKey({ userIDs: [{ name: "Dave", email: "dave@elsewhere.test" }], format: "object" })).privateKey;
    elsewhere.publishKey("dave", daveKey.toPublic().write());
    stripe = createServer((req, res) => {
      res.setHeader("Content-Type", "application/json");
      if (req.url?.startsWith("/v1/customers")) res.end(JSON.stringify({ id: "cus_E2eAcme0001", object: "customer" }));
      else if (req.url?.startsWith("/v1/checkout/sessions")) res.end(JSON.stringify({ id: "cs_test_e2e", object: "checkout.session", url: "https://checkout.stripe.test/cs_test_e2e" }));
      else {
        res.statusCode = 404;
        res.end(JSON.stringify({ error: { type: "invalid_request_error", message: `no ${req.url}` } }));
      }
    });
    await new Promise<void>((r) => stripe.listen(0, "127.0.0.1", r));
    instance = await Caliop.start({
      CALIOP_BILLING_PROVIDER: "stripe",
      CALIOP_BILLING_STRIPE_API_BASE: `http://127.0.0.1:${(stripe.address() as AddressInfo).port}/`,
      CALIOP_BILLING_STRIPE_SECRET_KEY: "sk_test_e2e",
      CALIOP_BILLING_STRIPE_WEBHOOK_SECRETS: `["${WHSEC}"]`,
      CALIOP_BILLING_PUBLIC_DOMAIN: "free.test",
      CALIOP_BILLING_POOL_HORIZON_MONTHS: "1",
      // About a million tries on average: long enough for the page to show its progress.
      CALIOP_BILLING_SIGNUP_DIFFICULTY: "20",
      ...elsewhere.env(),
    });
    elsewhere.publishIn(instance.dns);
    const operator = instance.operatorToken();
    const verify = async (domainId: string, records: { name: string; type: string; value: string }[]) => {
      const proof = records[0]!;
      instance.dns.publish(proof.name, proof.type, proof.value);
      expect((await instance.api("POST", `/v1/domains/${domainId}/verify`, operator, {})).status).toBe(200);
    };
    // The public instance: a tenant of kind `public` owning free.test.
    const free = await instance.api<{ id: string }>("POST", "/v1/tenants", operator, {
      name: "Free accounts",
      kind: "public",
      limits: { max_accounts: 1_000_000, max_domains: 1, storage_quota_bytes: 0 },
    });
    expect(free.status).toBe(201);
    const freeDomain = await instance.api<{ id: string; verification_record: { name: string; type: string; value: string } }>(
      "POST", `/v1/tenants/${free.body.id}/domains`, operator, { name: "free.test" },
    );
    expect(freeDomain.status).toBe(201);
    await verify(freeDomain.body.id, [freeDomain.body.verification_record]);
    // A paying enterprise on a plan that gives 20% to the pool.
    const plan = await instance.api<{ id: string }>("POST", "/v1/plans", operator, {
      name: "Business", currency: "eur", seat_price_cents: 1000, storage_per_seat_bytes: 1_000_000_000,
      max_domains: 5, max_accounts: 50, solidarity_percent: 20, stripe_price_id: "price_1E2e",
    });
    expect(plan.status).toBe(201);
    const acme = await instance.api<{ id: string }>("POST", "/v1/tenants", operator, {
      name: "Acme", kind: "enterprise", limits: { max_accounts: 10, max_domains: 2, storage_quota_bytes: 10_000_000_000 },
    });
    acmeTenant = acme.body.id;
    const onboarded = await instance.api<{ domain: { id: string }; dns_records: { name: string; type: string; value: string }[] }>(
      "POST", `/v1/tenants/${acmeTenant}/onboard`, operator, { domain: "acme.test", admin: { address: ALICE.address, password: ALICE.password, role: "admin" } },
    );
    expect(onboarded.status).toBe(201);
    await verify(onboarded.body.domain.id, onboarded.body.dns_records);
    expect((await instance.api("PUT", `/v1/tenants/${acmeTenant}/plan`, operator, { plan_id: plan.body.id })).status).toBe(200);
    acmeAdmin = await instance.token(ALICE.address, ALICE.password);
    // Checkout makes Acme's Stripe customer (our fake Stripe answers it).
    const checkout = await instance.api<{ url: string }>("POST", `/v1/tenants/${acmeTenant}/billing/checkout`, acmeAdmin, {});
    expect(checkout.status).toBe(201);
  });

  afterAll(async () => {
    await instance?.stop();
    stripe?.close();
    elsewhere?.stop();
  });

  it("solves the proof of work, waits in line, opens when the pool is funded, and reads sealed mail", async () => {
    const pool = await (await fetch(`${instance.base}/v1/public/pool`)).json() as { funded_capacity: number };
    expect(pool.funded_capacity).toBe(0);
    const { context, page } = await newPage(browser);
    const sent = record(page);
    await page.goto(`${instance.base}/signup`);
    await page.getByRole("heading", { name: /Create/ }).waitFor();
    await page.getByLabel("Your new address").fill(CAROL.address);
    await page.getByLabel("Password", { exact: true }).fill("short");
    await expect(page.getByTestId("strength").textContent()).resolves.toContain("Too short");
    await page.getByLabel("Password", { exact: true }).fill(CAROL.password);
    await expect(page.getByTestId("strength").textContent()).resolves.not.toContain("Too short");
    await page.getByLabel("Password again").fill(CAROL.password);
    await page.getByLabel("Recovery address (optional)").fill("carol.home@elsewhere.test");
    await page.locator("details.explain summary").click();
    await checkView(page, "signup");
    // The page works on the stamp, and says how far it is: seen by an observer, as a lucky stamp is found in a moment.
    await page.evaluate(() => {
      new MutationObserver(() => {
        if (document.querySelector("[role=progressbar]")) (window as unknown as { sawProgress: boolean }).sawProgress = true;
      }).observe(document.body, { childList: true, subtree: true });
    });
    await page.getByRole("button", { name: "Create my account" }).click();
    await page.getByRole("heading", { name: "You are in the waiting line" }).waitFor({ timeout: 60_000 });
    expect(await page.evaluate(() => (window as unknown as { sawProgress?: boolean }).sawProgress)).toBe(true);
    await expect(page.getByTestId("position").textContent()).resolves.toBe("Place 1");
    await page.getByTestId("pool").waitFor();
    // The link that sets the password is shown to be kept, this once.
    const link = (await page.getByTestId("activation-link").textContent())!;
    expect(link).toMatch(/^https:\/\/[^/]+\/activate#[A-Za-z0-9_-]{43}$/);
    const linkSecret = link.split("#")[1]!;
    await checkView(page, "waiting");
    // The signup that went out carried a stamp the server checked (it answered "waiting"), and no password.
    const signup = sent.find((r) => r.url.endsWith("/v1/public/signup"));
    expect(JSON.parse(signup!.body).stamp.counter).toBeGreaterThanOrEqual(0);
    expect(Object.keys(JSON.parse(signup!.body)).sort()).toEqual(["address", "recovery_address", "stamp"]);

    // Erin signs up too, waits behind Carol, and closes the page keeping only the link.
    const first = await newPage(browser);
    const erinSent = record(first.page);
    await first.page.goto(`${instance.base}/signup`);
    await first.page.getByLabel("Your new address").fill("erin");
    await expect(first.page.getByTestId("new-address").textContent()).resolves.toBe(`Your address will be ${ERIN.address}.`);
    await first.page.getByLabel("Password", { exact: true }).fill(ERIN.password);
    await first.page.getByLabel("Password again").fill(ERIN.password);
    const answered = first.page.waitForResponse((r) => r.url().endsWith("/v1/public/signup") && r.request().method() === "POST", { timeout: 60_000 });
    await first.page.getByRole("button", { name: "Create my account" }).click();
    const erinSignup = await (await answered).json() as { status: string; token: string; activation_url: string };
    expect(erinSignup.status).toBe("waiting");
    await first.page.getByRole("heading", { name: "You are in the waiting line" }).waitFor();
    await expect(first.page.getByTestId("position").textContent()).resolves.toBe("Place 2");
    const erinLink = (await first.page.getByTestId("activation-link").textContent())!;
    expect(erinLink).toBe(erinSignup.activation_url);
    erin = { token: erinSignup.token, secret: erinLink.split("#")[1]!, sent: erinSent };
    await first.context.close();

    // A paid invoice credits the pool; the page, still open, sees the account open.
    await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));
    const { body, signature } = stripeEvent("invoice.paid", paidInvoice("in_1E2eFund0001", "cus_E2eAcme0001", 1000));
    const hook = await fetch(`${instance.base}/v1/billing/stripe/webhook`, { method: "POST", headers: { "Content-Type": "application/json", "Stripe-Signature": signature }, body });
    expect(hook.status).toBe(200);
    await page.getByTestId("admitted").waitFor({ timeout: 20_000 });
    expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
    await page.getByRole("button", { name: "Open my mailbox" }).click();
    await page.getByRole("heading", { name: "Inbox" }).waitFor({ timeout: 30_000 });
    // The password was set on the device with the link: the server saw OPAQUE messages only.
    expectPasswordSetOnDevice(sent, CAROL.password, linkSecret);

    // Mail from elsewhere, over SMTP, is sealed on arrival to Carol's key.
    await smtpSend(
      smtpPort(instance),
      "dave@elsewhere.test",
      CAROL.address,
      `From: Dave <dave@elsewhere.test>\nTo: ${CAROL.address}\nCc: Alice <${ALICE.address}>\nSubject: Welcome aboard\nMessage-ID: <welcome-1@elsewhere.test>\nDate: ${new Date().toUTCString()}\nContent-Type: text/plain; charset=utf-8\n\nThe meeting room code is 5512-HERON.\n`,
    );
    const carolToken = await instance.token(CAROL.address, CAROL.password);
    const carolId = whoami(carolToken).account_id;
    // The recovery address she gave waited in line with her signup.
    expect((await instance.api<{ recovery_address: string }>("GET", `/v1/accounts/${carolId}`, carolToken)).body.recovery_address).toBe("carol.home@elsewhere.test");
    let fromDave: Listed["items"][number] | undefined;
    for (let i = 0; i < 100 && !fromDave; i++) {
      const items = (await instance.api<Listed>("GET", `/v1/accounts/${carolId}/messages?folder=inbox`, carolToken)).body.items;
      fromDave = items.find((m) => m.envelope_from === "dave@elsewhere.test");
      if (!fromDave) await new Promise((r) => setTimeout(r, 200));
    }
    expect(fromDave!.level).toBe("sealed");
    await page.getByRole("button", { name: "Refresh" }).click();
    await page.locator(`a[href$="/${fromDave!.id}"]`).click();
    await page.getByRole("heading", { name: "Welcome aboard" }).waitFor();
    await expect(page.getByTestId("body").textContent()).resolves.toContain("5512-HERON");
    // Neither the text nor her unlocked key went out in any request the page made, from signup on.
    const keyLines = instance.unlockKey(CAROL.address, CAROL.password).split("\n").filter((l) => l.length >= 60 && !l.startsWith("-----"));
    expect(keyLines.length).toBeGreaterThan(2);
    for (const request of sent) {
      expect(request.url + request.body).not.toContain("5512-HERON");
      for (const line of keyLines) expect(request.url + request.body).not.toContain(line);
    }
    await context.close();
  });

  it("replies to all: the hosted recipient at sealed reads it decrypted, the other domain gets it encrypted to the key it publishes", async () => {
    const REPLY = "Count me in: the code is 8824-KESTREL";
    // Alice, hosted here, keeps her mail sealed.
    const aliceId = whoami(acmeAdmin).account_id;
    expect((await instance.api("PATCH", `/v1/accounts/${aliceId}`, acmeAdmin, { level: "sealed" })).status).toBe(200);
    const { context, page } = await newPage(browser);
    const sent = record(page);
    await signIn(page, CAROL, instance.base);
    await page.getByTestId("message-row").filter({ hasText: "Welcome aboard" }).locator("a").click();
    await page.getByRole("heading", { name: "Welcome aboard" }).waitFor();
    await page.getByRole("link", { name: "Reply to all" }).click();
    await page.getByRole("heading", { name: "Reply to all" }).waitFor();
    await expect(page.getByLabel("To", { exact: true }).inputValue()).resolves.toBe("dave@elsewhere.test");
    await expect(page.getByLabel("Cc", { exact: true }).inputValue()).resolves.toBe(ALICE.address);
    // Dave's key comes from his domain's key directory (fetched by the server, over HTTPS), Alice's from here.
    const statuses = page.getByTestId("key-status");
    await expect.poll(async () => (await statuses.allTextContents()).join("\n")).toContain("dave@elsewhere.test: will be encrypted to the key their domain publishes");
    await expect.poll(async () => (await statuses.allTextContents()).join("\n")).toContain(`${ALICE.address}: will be encrypted to their key`);
    await page.getByLabel("Message").press("Control+Home");
    await page.getByLabel("Message").pressSequentially(REPLY);
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByTestId("sent").waitFor();
    // It answers Dave's message, whose Message-ID the page read from the sealed original.
    const submitted = JSON.parse(sent.find((r) => /\/v1\/accounts\/[^/]+\/messages$/.test(r.url))!.body) as { to: string[]; cc: string[]; in_reply_to?: string };
    expect(submitted.in_reply_to).toBe("<welcome-1@elsewhere.test>");
    expect([...submitted.to, ...submitted.cc].sort()).toEqual([ALICE.address, "dave@elsewhere.test"]);
    await context.close();

    // What left for elsewhere.test is PGP/MIME that Dave's key, and only a key, opens.
    await expect.poll(() => elsewhere.received().length, { timeout: 20_000 }).toBe(1);
    const [outgoing] = elsewhere.received();
    expect(outgoing).toMatch(/Content-Type: multipart\/encrypted;[\s\S]*application\/pgp-encrypted/i);
    expect(outgoing).not.toContain("8824-KESTREL");
    const openpgp = await import("openpgp");
    const armored = /-----BEGIN PGP MESSAGE-----[\s\S]*?-----END PGP MESSAGE-----/.exec(outgoing!)![0];
    const { data } = await openpgp.decrypt({ message: await openpgp.readMessage({ armoredMessage: armored }), decryptionKeys: daveKey });
    expect(String(data)).toContain("8824-KESTREL");
    expect(String(data)).toContain("Subject: Re: Welcome aboard");

    // Alice reads it in her page, decrypted there: it is stored sealed, and no request of hers carries the text.
    let copy: Listed["items"][number] | undefined;
    for (let i = 0; i < 100 && !copy; i++) {
      const items = (await instance.api<Listed>("GET", `/v1/accounts/${aliceId}/messages?folder=inbox`, acmeAdmin)).body.items;
      copy = items.find((m) => m.envelope_from === CAROL.address);
      if (!copy) await new Promise((r) => setTimeout(r, 200));
    }
    expect(copy!.level).toBe("sealed");
    const raw = await (await fetch(`${instance.base}/v1/messages/${copy!.id}/raw`, { headers: { Authorization: `Bearer ${acmeAdmin}` } })).text();
    expect(raw).not.toContain("8824-KESTREL");
    const alice = await newPage(browser);
    const aliceSent = record(alice.page);
    await signIn(alice.page, ALICE, instance.base);
    await alice.page.locator(`a[href$="/${copy!.id}"]`).click();
    await alice.page.getByRole("heading", { name: "Re: Welcome aboard" }).waitFor();
    await expect(alice.page.getByTestId("body").textContent()).resolves.toContain(REPLY);
    await expect(alice.page.getByTestId("from").textContent()).resolves.toContain(CAROL.address);
    for (const request of aliceSent) expect(request.url + request.body).not.toContain("8824-KESTREL");
    await alice.context.close();
  });

  it("keeps the link for a person who closed the page, and the link sets the password once the account opens", async () => {
    await expect.poll(async () => ((await (await fetch(`${instance.base}/v1/public/signup/${erin.token}`)).json()) as { status: string }).status, { timeout: 20_000 }).toBe("admitted");
    const linkSecret = erin.secret;
    // Later, the kept link opens the users' app, which sets the password on the device.
    const later = await newPage(browser);
    const sentLater = record(later.page);
    await later.page.goto(`${instance.base}/activate#${linkSecret}`);
    await later.page.getByLabel("New password", { exact: true }).fill(ERIN.password);
    await later.page.getByLabel("New password again").fill(ERIN.password);
    await later.page.getByRole("button", { name: "Set the password" }).click();
    await later.page.getByText(`${ERIN.address} is ready.`).waitFor({ timeout: 30_000 });
    expect(later.page.url()).not.toContain(linkSecret);
    await later.page.getByRole("button", { name: "Sign in" }).click();
    await later.page.getByLabel("Email address").fill(ERIN.address);
    await later.page.getByLabel("Password").fill(ERIN.password);
    await later.page.getByRole("button", { name: "Sign in" }).click();
    await later.page.getByRole("heading", { name: "Inbox" }).waitFor({ timeout: 30_000 });
    expectPasswordSetOnDevice([...erin.sent, ...sentLater], ERIN.password, linkSecret);
    await later.context.close();
  });
});

describe("on a tenant's own hostname, with self-signup", () => {
  const DANA = { address: "dana@globex.test", password: "dana's long passphrase here" };
  let instance: Caliop;
  let tenant: string;
  let host: string;
  let brandedBrowser: Browser;

  beforeAll(async () => {
    instance = await Caliop.start();
    const operator = instance.operatorToken();
    const made = await instance.api<{ id: string }>("POST", "/v1/tenants", operator, {
      name: "Globex",
      kind: "enterprise",
      limits: { max_accounts: 10, max_domains: 2, storage_quota_bytes: 10_000_000_000 },
    });
    tenant = made.body.id;
    const onboarded = await instance.api<{ domain: { id: string }; dns_records: { name: string; type: string; value: string }[] }>(
      "POST", `/v1/tenants/${tenant}/onboard`, operator, { domain: "globex.test", admin: { address: "it@globex.test", password: "globex admin passphrase", role: "admin" } },
    );
    const proof = onboarded.body.dns_records[0]!;
    instance.dns.publish(proof.name, proof.type, proof.value);
    expect((await instance.api("POST", `/v1/domains/${onboarded.body.domain.id}/verify`, operator, {})).status).toBe(200);
    expect((await instance.api("PUT", `/v1/tenants/${tenant}/branding`, operator, { product_name: "Globex Mail", primary_color: "#14532d", accent_color: "#9a3412" })).status).toBe(200);
    const hostname = await instance.api<{ id: string; verification_record: { name: string; value: string } }>("POST", `/v1/tenants/${tenant}/hostnames`, operator, { hostname: "mail.globex.test" });
    instance.dns.publish(hostname.body.verification_record.name, "TXT", hostname.body.verification_record.value);
    expect((await instance.api<{ verified: boolean }>("POST", `/v1/hostnames/${hostname.body.id}/verify`, operator, {})).body.verified).toBe(true);
    expect((await instance.api("PUT", `/v1/tenants/${tenant}/self-signup`, operator, { domain: "globex.test" })).status).toBe(200);
    host = `http://mail.globex.test:${instance.port()}`;
    // The tenant's hostname is served over TLS in production: a secure page, as device sign-in needs.
    brandedBrowser = await launchBrowser([host]);
  });

  afterAll(async () => {
    await brandedBrowser?.close();
    await instance?.stop();
  });

  it("wears the tenant's brand and signs up into the tenant, never showing another brand", async () => {
    const { context, page } = await newPage(brandedBrowser);
    await page.goto(`${host}/signup`);
    await page.getByRole("heading", { name: "Create your Globex Mail account" }).waitFor();
    await expect(page.locator(".brand .name").textContent()).resolves.toBe("Globex Mail");
    const primary = await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue("--primary").trim());
    expect(primary).toBe("#14532d");
    await expect(page.title()).resolves.toContain("Globex Mail");
    await page.getByLabel("Your new address").fill(DANA.address);
    await page.getByLabel("Password", { exact: true }).fill(DANA.password);
    await page.getByLabel("Password again").fill(DANA.password);
    const sent = record(page);
    const answered = page.waitForResponse((r) => r.url().endsWith("/v1/public/signup") && r.request().method() === "POST", { timeout: 60_000 });
    await page.getByRole("button", { name: "Create my account" }).click();
    const signup = await (await answered).json() as { status: string; activation_url: string };
    expect(signup.status).toBe("admitted");
    expect(signup.activation_url).toMatch(/^https:\/\/mail\.globex\.test\/activate#/);
    await page.getByRole("heading", { name: "Inbox" }).waitFor({ timeout: 60_000 });
    expectPasswordSetOnDevice(sent, DANA.password, signup.activation_url.split("#")[1]!);
    expect(await page.content()).not.toMatch(/caliop/i);
    await checkView(page, "branded-inbox");
    const accounts = await instance.api<{ items: { address: string }[] }>("GET", `/v1/tenants/${tenant}/accounts`, instance.operatorToken());
    expect(accounts.body.items.map((a) => a.address)).toContain(DANA.address);
    await context.close();
  });

  it("shows the link to keep when the password could not be set at once, and the link sets it", async () => {
    const FAY = { address: "fay@globex.test", password: "fay's long passphrase here" };
    const { context, page } = await newPage(brandedBrowser);
    const sent = record(page);
    // The network fails just as the page would open the new account.
    await page.route("**/v1/public/activations/**", (route) => route.abort("connectionreset"));
    await page.goto(`${host}/signup`);
    await page.getByLabel("Your new address").fill("fay");
    await page.getByLabel("Password", { exact: true }).fill(FAY.password);
    await page.getByLabel("Password again").fill(FAY.password);
    await page.getByRole("button", { name: "Create my account" }).click();
    const link = (await page.getByTestId("activation-link").textContent({ timeout: 60_000 }))!;
    expect(link).toMatch(/^https:\/\/mail\.globex\.test\/activate#/);
    await page.getByRole("alert").waitFor();
    await page.unroute("**/v1/public/activations/**");
    await page.goto(`${host}/activate#${link.split("#")[1]!}`);
    await page.getByLabel("New password", { exact: true }).fill(FAY.password);
    await page.getByLabel("New password again").fill(FAY.password);
    await page.getByRole("button", { name: "Set the password" }).click();
    await page.getByText(`${FAY.address} is ready.`).waitFor({ timeout: 30_000 });
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByLabel("Email address").fill(FAY.address);
    await page.getByLabel("Password").fill(FAY.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: "Inbox" }).waitFor({ timeout: 30_000 });
    expectPasswordSetOnDevice(sent, FAY.password, link.split("#")[1]!);
    await context.close();
  });

  it("shows the operator's brand, not the tenant's, on any other host", async () => {
    const { context, page } = await newPage(brandedBrowser);
    await page.goto(`${instance.base}/`);
    await page.getByRole("heading", { name: /Sign in/ }).waitFor();
    expect(await page.content()).not.toContain("Globex");
    await context.close();
  });
});
