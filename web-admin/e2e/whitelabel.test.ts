// White label: through a tenant's own hostname the app shows that tenant's
// name, logo and colours, and nothing of the software's name or of another
// tenant. And a session that expires mid-form asks for the password again
// without losing what was typed.
import { deflateSync, crc32 } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Browser } from "playwright-core";
import { Caliop, accessibility, describeViolations, launchBrowser, newPage, pictureOfFailure, screenshots } from "./harness";

const ADMIN = { address: "it@globex.test", password: "globex admin passphrase" };

/** A real 64×64 PNG of one colour, so the logo renders. */
function png(r: number, g: number, b: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body) >>> 0, 8 + data.length);
    return out;
  };
  const size = 64;
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // truecolour
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: size }, () => [r, g, b]).flat())]);
  const pixels = Buffer.concat(Array.from({ length: size }, () => row));
  return Buffer.concat([Buffer.from("\x89PNG\r\n\x1a\n", "latin1"), chunk("IHDR", header), chunk("IDAT", deflateSync(pixels)), chunk("IEND", Buffer.alloc(0))]);
}

let browser: Browser;

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") await pictureOfFailure(ctx.task.name);
});
beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
});

describe("on a tenant's own hostname", () => {
  let caliop: Caliop;
  let host: string;
  beforeAll(async () => {
    caliop = await Caliop.start();
    const operator = caliop.operatorToken();
    const created = await caliop.api<{ id: string }>("POST", "/v1/tenants", operator, {
      name: "Globex",
      kind: "enterprise",
      limits: { max_accounts: 10, max_domains: 2, storage_quota_bytes: 10_000_000_000 },
    });
    expect(created.status).toBe(201);
    const tenant = created.body.id;
    const onboarded = await caliop.api("POST", `/v1/tenants/${tenant}/onboard`, operator, {
      domain: "globex.test",
      admin: { address: ADMIN.address, password: ADMIN.password, role: "admin" },
    });
    expect(onboarded.status).toBe(201);
    const brand = await caliop.api("PUT", `/v1/tenants/${tenant}/branding`, operator, { product_name: "Globex Mail", primary_color: "#14532d", accent_color: "#9a3412" });
    expect(brand.status).toBe(200);
    const logo = await fetch(`${caliop.base}/v1/tenants/${tenant}/branding/logo`, {
      method: "PUT",
      headers: { Authorization: `Bearer ${operator}`, "Content-Type": "image/png" },
      body: new Uint8Array(png(20, 83, 45)),
    });
    expect(logo.status).toBe(200);
    const hostname = await caliop.api<{ id: string; verification_record: { name: string; value: string } }>("POST", `/v1/tenants/${tenant}/hostnames`, operator, { hostname: "admin.globex.test" });
    expect(hostname.status).toBe(201);
    caliop.dns.publish(hostname.body.verification_record.name, "TXT", hostname.body.verification_record.value);
    const verified = await caliop.api<{ verified: boolean }>("POST", `/v1/hostnames/${hostname.body.id}/verify`, operator, {});
    expect(verified.body.verified).toBe(true);
    host = `http://admin.globex.test:${caliop.port()}`;
  });
  afterAll(async () => {
    await caliop?.stop();
  });

  it("shows the tenant's name and logo, and never the software's name", async () => {
    // The tenant's hostname is HTTPS in production; here it is plain HTTP, marked secure.
    const onTheirHost = await launchBrowser([host]);
    const { context, page } = await newPage(onTheirHost);
    await page.goto(`${host}/admin/`);
    await page.getByRole("heading", { name: "Sign in to Globex Mail administration" }).waitFor();
    await expect(page.title()).resolves.toBe("Administration · Globex Mail");
    const logo = page.locator("a.brand img");
    await expect.poll(() => logo.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBe(64);
    await expect(logo.getAttribute("src")).resolves.toBe("/v1/public/branding/logo");
    await expect(page.locator("a.brand").textContent()).resolves.toBe("Globex Mail");
    const button = page.getByRole("button", { name: "Sign in" });
    await expect(button.evaluate((el) => getComputedStyle(el).backgroundColor)).resolves.toBe("rgb(20, 83, 45)");
    expect(await page.evaluate(() => document.body.innerText)).not.toMatch(/caliop/i);
    await screenshots(page, "whitelabel-signin");

    await page.getByLabel("Email address").fill(ADMIN.address);
    await page.getByLabel("Password").fill(ADMIN.password);
    await button.click();
    await page.getByRole("heading", { name: "Globex" }).waitFor();
    for (const link of ["Overview", "Accounts", "Billing", "Branding"]) {
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: link }).click();
      await page.getByRole("heading", { level: 1 }).waitFor();
      await page.waitForLoadState("networkidle");
      expect(await page.evaluate(() => document.body.innerText), `visible text of ${link}`).not.toMatch(/caliop/i);
      expect(await page.title()).not.toMatch(/caliop/i);
    }
    const violations = await accessibility(page);
    expect(violations, describeViolations(violations)).toEqual([]);
    await screenshots(page, "whitelabel-branding");
    await context.close();
    await onTheirHost.close();
  });

  it("shows the operator's brand, not the tenant's, on any other host", async () => {
    const { context, page } = await newPage(browser);
    await page.goto(`${caliop.base}/admin/`);
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    await page.waitForLoadState("networkidle");
    expect(await page.title()).not.toContain("Globex");
    expect(await page.evaluate(() => document.body.innerText)).not.toContain("Globex");
    await context.close();
  });
});

describe("a session that expires", () => {
  let caliop: Caliop;
  beforeAll(async () => {
    // Tokens live 1 s (the API allows 5 s of clock leeway on top).
    caliop = await Caliop.start({ CALIOP_API_TOKEN_TTL_SECONDS: "1" });
    const operator = caliop.operatorToken();
    const created = await caliop.api<{ id: string }>("POST", "/v1/tenants", operator, {
      name: "Initech",
      kind: "enterprise",
      limits: { max_accounts: 10, max_domains: 2, storage_quota_bytes: 10_000_000_000 },
    });
    await caliop.api("POST", `/v1/tenants/${created.body.id}/onboard`, operator, {
      domain: "initech.test",
      admin: { address: "bill@initech.test", password: "initech passphrase", role: "admin" },
    });
  });
  afterAll(async () => {
    await caliop?.stop();
  });

  it("asks for the password again and keeps what was typed", async () => {
    const { context, page } = await newPage(browser);
    await page.goto(`${caliop.base}/admin/`);
    await page.getByLabel("Email address").fill("bill@initech.test");
    await page.getByLabel("Password").fill("initech passphrase");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("link", { name: "Accounts" }).click();
    const form = page.locator("form", { hasText: "New account" });
    await form.getByLabel("Address").fill("peter@initech.test");
    await form.getByLabel("Display name").fill("Peter Gibbons");
    await form.getByLabel("Password").fill("tps reports forever");
    await page.waitForTimeout(7_500);
    await form.getByRole("button", { name: "Create account" }).click();
    const dialog = page.getByRole("dialog", { name: "Your session has expired" });
    await dialog.waitFor();
    await dialog.getByLabel("Password").fill("initech passphrase");
    await dialog.getByRole("button", { name: "Continue" }).click();
    // The request that met the expired token went out again with the new one.
    await page.getByText("peter@initech.test was created.").waitFor();
    const token = await caliop.token("bill@initech.test", "initech passphrase");
    const tenants = await caliop.api<{ items: { id: string; name: string }[] }>("GET", "/v1/tenants", caliop.operatorToken());
    const initech = tenants.body.items.find((x) => x.name === "Initech")!;
    const accounts = await caliop.api<{ items: { address: string; display_name: string }[] }>("GET", `/v1/tenants/${initech.id}/accounts`, token);
    expect(accounts.body.items).toContainEqual(expect.objectContaining({ address: "peter@initech.test", display_name: "Peter Gibbons" }));
    await context.close();
  });
});
