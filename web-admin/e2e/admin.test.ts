// The admin app end to end: an operator creates a reseller, the reseller
// onboards a customer, the customer's admin publishes DNS, creates accounts,
// brands, makes an API key and looks at billing. Every step checks what is
// on screen and what the API holds afterwards; the main views pass axe-core
// without serious or critical violations and are photographed at laptop and
// phone width into artifacts/.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Browser, Page } from "playwright-core";
import { Caliop, accessibility, describeViolations, launchBrowser, newPage, pictureOfFailure, screenshots } from "./harness";

const OPERATOR = { address: "ops@operator.test", password: "operator passphrase" };
const RESELLER = { address: "admin@hosting.test", password: "reseller passphrase" };
const TENANT = { address: "boss@acme.test", password: "tenant admin passphrase" };

let caliop: Caliop;
let browser: Browser;

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") await pictureOfFailure(ctx.task.name);
});
let operatorToken: string;

beforeAll(async () => {
  caliop = await Caliop.start();
  caliop.createOperator(OPERATOR.address, OPERATOR.password);
  operatorToken = caliop.operatorToken();
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await caliop?.stop();
});

async function signIn(page: Page, who: { address: string; password: string }): Promise<void> {
  await page.goto(`${caliop.base}/admin/`);
  await page.getByLabel("Email address").fill(who.address);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

async function checkView(page: Page, name: string): Promise<void> {
  await page.waitForLoadState("networkidle");
  const violations = await accessibility(page);
  expect(violations, describeViolations(violations)).toEqual([]);
  await screenshots(page, name);
}

interface Tenant {
  id: string;
  name: string;
  kind: string;
  parent_id: string | null;
}
interface Page_<T> {
  items: T[];
}

describe("the admin app", () => {
  it("refuses a wrong password with the API's words, and signs the operator in", async () => {
    const { context, page } = await newPage(browser);
    await page.goto(`${caliop.base}/admin/`);
    await checkView(page, "signin");
    await page.getByLabel("Email address").fill("not-an-address");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect.poll(() => page.locator("#field-address-error").textContent()).toContain("is not an email address");
    await page.getByLabel("Email address").fill(OPERATOR.address);
    await page.getByLabel("Password").fill("wrong password!");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("wrong address or password").waitFor();
    await page.getByLabel("Password").fill(OPERATOR.password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await expect(page.locator(".who .role").textContent()).resolves.toBe("Operator");
    await context.close();
  });

  it("lets the operator create a reseller with its first admin", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, OPERATOR);
    await checkView(page, "operator-overview");
    await page.getByRole("link", { name: "Tenants" }).click();
    await page.getByRole("link", { name: "New tenant" }).click();
    await page.getByLabel("Name", { exact: true }).fill("Hosting Co");
    await page.getByLabel("Kind").selectOption("reseller");
    await page.getByLabel("Accounts").fill("100");
    await page.getByLabel("Domains").fill("10");
    await page.getByLabel("Storage (GB)").fill("100");
    await page.getByLabel("Mail domain").fill("hosting.test");
    await page.getByLabel("Administrator's address").fill(RESELLER.address);
    await page.getByLabel("Administrator's password").fill(RESELLER.password);
    await checkView(page, "operator-new-tenant");
    await page.getByRole("button", { name: "Create and onboard" }).click();
    await page.getByRole("heading", { name: "Hosting Co" }).waitFor();
    await page.getByRole("heading", { name: "hosting.test" }).waitFor();

    const resellers = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants?kind=reseller", operatorToken);
    const hosting = resellers.body.items.find((x) => x.name === "Hosting Co");
    expect(hosting?.kind).toBe("reseller");
    const accounts = await caliop.api<Page_<{ address: string; role: string }>>("GET", `/v1/tenants/${hosting!.id}/accounts`, operatorToken);
    expect(accounts.body.items).toEqual([expect.objectContaining({ address: RESELLER.address, role: "admin" })]);

    await page.getByRole("link", { name: "Tenants" }).click();
    await page.getByRole("link", { name: "Hosting Co" }).waitFor();
    await checkView(page, "operator-tenants");
    for (const [link, name] of [["Plans", "plans"], ["Funding pool", "pool"], ["Storage sites", "sites"], ["Job queue", "queue"], ["Audit log", "operator-audit"]] as const) {
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: link }).click();
      await page.getByRole("heading", { level: 1, name: link }).waitFor();
      await checkView(page, name);
    }
    // No ACME here: the page says how certificates come, instead of an empty table.
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Certificates" }).click();
    await page.getByRole("heading", { level: 1, name: "Certificates" }).waitFor();
    await page.getByRole("cell", { name: /^No certificate yet\. Certificates are obtained by ACME .* when acme\.enabled is set in the configuration/ }).waitFor();
    await checkView(page, "certificates");
    const certificates = await caliop.api<unknown[]>("GET", "/v1/certificates", operatorToken);
    expect(certificates).toEqual({ status: 200, body: [] });
    await context.close();
  });

  it("lets the reseller onboard a customer in one step", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, RESELLER);
    await page.getByRole("link", { name: "New customer" }).first().click();
    await page.getByLabel("Name", { exact: true }).fill("Acme");
    await page.getByLabel("Mail domain").fill("acme.test");
    // Client-side: the admin must be in the domain, the password long enough.
    await page.getByLabel("Administrator's address").fill("boss@elsewhere.test");
    await page.getByLabel("Administrator's password").fill("short");
    await page.getByRole("button", { name: "Create and onboard" }).click();
    await page.getByText("must be in the domain acme.test").waitFor();
    const before = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    expect(before.body.items.some((x) => x.name === "Acme")).toBe(false);

    await page.getByLabel("Administrator's address").fill(TENANT.address);
    await page.getByLabel("Administrator's password").fill(TENANT.password);
    await checkView(page, "reseller-onboard");
    await page.getByRole("button", { name: "Create and onboard" }).click();
    await page.getByRole("heading", { name: "acme.test" }).waitFor();

    const all = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    const acme = all.body.items.find((x) => x.name === "Acme")!;
    const hosting = all.body.items.find((x) => x.name === "Hosting Co")!;
    expect(acme.parent_id).toBe(hosting.id);
    expect(acme.kind).toBe("enterprise");

    await page.getByRole("link", { name: "Customers" }).click();
    await page.getByRole("link", { name: "Acme" }).waitFor();
    await checkView(page, "reseller-customers");
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("cell", { name: "Acme" }).waitFor();
    const download = page.waitForEvent("download");
    await page.getByRole("button", { name: /Export CSV/ }).click();
    const csv = await (await download).createReadStream();
    const text = await new Promise<string>((resolve) => {
      let out = "";
      csv.on("data", (c) => (out += c));
      csv.on("end", () => resolve(out));
    });
    expect(text).toContain("Acme");
    await checkView(page, "reseller-usage");
    await context.close();
  });

  it("shows the tenant admin its DNS records, live, and verifies the domain", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, TENANT);
    await page.getByRole("link", { name: "Domains" }).click();
    // The admin adds a second domain; a malformed one is refused before sending.
    await page.getByLabel("New domain").fill("-bad.test");
    await page.getByRole("button", { name: "Add domain" }).click();
    await expect.poll(() => page.locator("#field-name-error").textContent()).toContain("cannot start or end with a hyphen");
    await page.getByLabel("New domain").fill("acme-mail.test");
    await page.getByRole("button", { name: "Add domain" }).click();
    await page.getByRole("heading", { name: "acme-mail.test" }).waitFor();
    const ownership = page.locator("article", { hasText: "acme.test" }).first().locator(".record", { hasText: "Ownership" });
    await expect(ownership.locator(".badge").textContent()).resolves.toBe("Missing");
    await expect(page.locator(".record", { hasText: "Incoming mail (MX)" }).first().locator(".badge").textContent()).resolves.toBe("Missing");
    await checkView(page, "tenant-domains");

    // Publish the ownership record the page shows, as the admin would at its DNS host.
    const name = (await ownership.locator("dd code").nth(1).textContent())!;
    const value = (await ownership.locator("dd code").nth(2).textContent())!;
    caliop.dns.publish(name, "TXT", value);
    await page.getByRole("button", { name: "Check again" }).first().click();
    await expect.poll(() => ownership.locator(".badge").textContent()).toBe("Verified");
    await page.getByRole("button", { name: "Verify", exact: true }).first().click();
    await page.getByText("The domain is verified.").waitFor();

    // MTA-STS: testing at first; enforcing changes the policy, its id, and the _mta-sts record to publish.
    const acmeCard = page.locator("article", { hasText: "acme.test" }).first();
    const mtaSts = acmeCard.locator(".mta-sts");
    await mtaSts.getByText("Current mode: Testing.").waitFor();
    const idBefore = (await mtaSts.locator("code").last().textContent())!;
    await mtaSts.getByRole("radio", { name: /^Enforce/ }).check();
    await mtaSts.getByRole("button", { name: "Save MTA-STS mode" }).click();
    await mtaSts.getByText("MTA-STS mode saved.").waitFor();
    await mtaSts.getByText("Current mode: Enforce.").waitFor();
    await expect(mtaSts.locator("pre").textContent()).resolves.toContain("mode: enforce");
    const idAfter = (await mtaSts.locator("code").last().textContent())!;
    expect(idAfter).not.toBe(idBefore);
    await expect.poll(() => acmeCard.locator(".record", { hasText: "_mta-sts." }).locator("code.value").first().textContent()).toContain(`id=${idAfter}`);

    // TLS reports, for the verified domain: none yet, and a sentence saying where they will come from.
    const tlsReports = acmeCard.locator(".tls-reports");
    await tlsReports.getByRole("heading", { name: "TLS reports" }).waitFor();
    await tlsReports.getByText("Mail servers that honour TLS reporting send their daily reports here, once the _smtp._tls record is published.").waitFor();
    await checkView(page, "tenant-domain-verified");

    const token = await caliop.token(TENANT.address, TENANT.password);
    const tenants = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    const acme = tenants.body.items.find((x) => x.name === "Acme")!;
    const domains = await caliop.api<Page_<{ id: string; name: string; verified: boolean }>>("GET", `/v1/tenants/${acme.id}/domains`, token);
    expect(domains.body.items).toHaveLength(2);
    expect(domains.body.items).toContainEqual(expect.objectContaining({ name: "acme.test", verified: true }));
    expect(domains.body.items).toContainEqual(expect.objectContaining({ name: "acme-mail.test", verified: false }));
    const acmeDomain = domains.body.items.find((d) => d.name === "acme.test")!;
    const policy = await caliop.api<{ mode: string; id: string }>("GET", `/v1/domains/${acmeDomain.id}/mta-sts`, token);
    expect(policy.body).toMatchObject({ mode: "enforce", id: idAfter });
    await context.close();
  });

  it("creates two accounts, with the API's problems next to the field", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, TENANT);
    await page.getByRole("link", { name: "Accounts" }).click();
    const form = page.locator("form", { hasText: "New account" });
    // Client-side: too short a password never reaches the API.
    await form.getByLabel("Address").fill("alice@acme.test");
    await form.getByLabel("Password").fill("short");
    await form.getByRole("button", { name: "Create account" }).click();
    await expect.poll(() => page.locator("#field-password-error").textContent()).toBe("the password must be at least 10 characters long");
    // Server-side: a domain the tenant does not host, said next to the address.
    await form.getByLabel("Address").fill("carol@other.test");
    await form.getByLabel("Password").fill("long enough password");
    await form.getByRole("button", { name: "Create account" }).click();
    await expect.poll(() => page.locator("#field-address-error").textContent()).toContain("other.test");

    for (const [address, display] of [["alice@acme.test", "Alice"], ["bob@acme.test", "Bob"]]) {
      await form.getByLabel("Address").fill(address!);
      await form.getByLabel("Display name").fill(display!);
      await form.getByLabel("Password").fill("long enough password");
      await form.getByRole("button", { name: "Create account" }).click();
      await page.getByText(`${address} was created.`).waitFor();
    }
    await page.getByRole("cell", { name: /bob@acme\.test/ }).first().waitFor();
    // Without a password: an activation link for its owner, shown once.
    await form.getByLabel("Address").fill("carol@acme.test");
    await form.getByLabel("Display name").fill("Carol");
    await form.getByRole("button", { name: "Create account" }).click();
    await page.getByText("carol@acme.test was created.").waitFor();
    await expect(page.getByTestId("activation-link").textContent()).resolves.toMatch(/^https:\/\/[^/]+\/admin\/activate#[A-Za-z0-9_-]{43}$/);
    await checkView(page, "tenant-accounts");
    // A lost password: a new link (a new key pair, said before it is made).
    await page.getByRole("button", { name: "New activation link for alice@acme.test" }).click();
    await page.getByText("a new key pair is made").waitFor();
    await page.getByRole("button", { name: "Make the link" }).click();
    await expect(page.getByRole("dialog").getByTestId("activation-link").textContent()).resolves.toContain("/admin/activate#");
    await page.getByRole("dialog").getByRole("button", { name: "Close" }).click();

    // Suspend Bob from the table.
    await page.getByRole("button", { name: "Suspend bob@acme.test" }).click();
    await page.getByRole("button", { name: "Reactivate bob@acme.test" }).waitFor();

    const token = await caliop.token(TENANT.address, TENANT.password);
    const tenants = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    const acme = tenants.body.items.find((x) => x.name === "Acme")!;
    const accounts = await caliop.api<Page_<{ address: string; status: string; display_name: string }>>("GET", `/v1/tenants/${acme.id}/accounts`, token);
    const byAddress = Object.fromEntries(accounts.body.items.map((a) => [a.address, a]));
    expect(Object.keys(byAddress).sort()).toEqual(["alice@acme.test", "bob@acme.test", "carol@acme.test", TENANT.address].sort());
    expect(byAddress["alice@acme.test"]).toMatchObject({ status: "active", display_name: "Alice" });
    expect(byAddress["bob@acme.test"]).toMatchObject({ status: "suspended" });
    await context.close();
  });

  it("makes a group of two accounts and a tenant-wide mail rule, which the server keeps as Sieve", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, TENANT);
    await page.getByRole("link", { name: "Aliases & groups" }).click();
    const form = page.locator("form", { hasText: "New alias or group" });
    await form.getByRole("radio", { name: /^Group/ }).check();
    // An account's address is not a group's: the API's words, next to the field.
    await form.getByLabel("Address", { exact: true }).fill("alice@acme.test");
    await form.getByRole("checkbox", { name: /alice@acme\.test/ }).check();
    await form.getByRole("button", { name: "Create group" }).click();
    await page.getByText("alice@acme.test` is taken", { exact: false }).first().waitFor();
    await form.getByLabel("Address", { exact: true }).fill("team@acme.test");
    await form.getByRole("checkbox", { name: /carol@acme\.test/ }).check();
    await form.getByRole("button", { name: "Create group" }).click();
    await page.getByText("team@acme.test was created.").waitFor();
    await page.getByRole("cell", { name: /team@acme\.test/ }).first().waitFor();
    await checkView(page, "tenant-addresses");

    await page.getByRole("link", { name: "Mail rules" }).click();
    await page.getByLabel("Text").first().fill("invoice");
    await page.getByLabel("Folder").first().fill("Invoices");
    await page.getByRole("button", { name: "Save and turn on" }).click();
    await page.getByText("Saved: the rules apply").waitFor();
    await checkView(page, "tenant-filters");

    const token = await caliop.token(TENANT.address, TENANT.password);
    const tenants = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    const acme = tenants.body.items.find((x) => x.name === "Acme")!;
    const addresses = await caliop.api<{ items: { address: string; kind: string; members: string[] }[] }>(
      "GET", `/v1/tenants/${acme.id}/addresses`, token);
    expect(addresses.body.items).toHaveLength(1);
    expect(addresses.body.items[0]).toMatchObject({ address: "team@acme.test", kind: "group" });
    expect(addresses.body.items[0]!.members).toHaveLength(2);
    const script = await caliop.api<{ content: string; active: boolean }>("GET", `/v1/tenants/${acme.id}/sieve`, token);
    expect(script.body.active).toBe(true);
    expect(script.body.content).toContain('fileinto "Invoices"');
    expect(script.body.content).toContain('"invoice"');
    await context.close();
  });

  it("changes the branding and the previews show the new colours", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, TENANT);
    await page.getByRole("link", { name: "Branding" }).click();
    const preview = page.getByTestId("preview-button");
    await preview.waitFor();
    // Too pale a colour: refused before sending, with the contrast the API would state.
    await page.getByLabel("Main colour", { exact: true }).fill("#ffff00");
    await page.getByLabel("Product name").fill("Acme Mail");
    await page.getByRole("button", { name: "Save" }).click();
    await expect.poll(() => page.locator("#field-primary_color-error").textContent()).toContain("4.5:1");

    await page.getByLabel("Main colour", { exact: true }).fill("#7c2d12");
    // Live: the signup preview follows what is typed, before saving.
    await expect.poll(() => preview.evaluate((el) => getComputedStyle(el).backgroundColor)).toBe("rgb(124, 45, 18)");
    await expect.poll(() => page.getByTestId("signup-preview").textContent()).toContain("Acme Mail");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Saved.").first().waitFor();
    // The system mail, rendered by the server with the saved brand.
    await expect.poll(() => page.getByTestId("mail-preview").getAttribute("srcdoc")).toContain("#7c2d12");
    await expect(page.getByTestId("mail-preview").getAttribute("srcdoc")).resolves.toContain("Acme Mail");
    await checkView(page, "tenant-branding");

    const token = await caliop.token(TENANT.address, TENANT.password);
    const tenants = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    const acme = tenants.body.items.find((x) => x.name === "Acme")!;
    const branding = await caliop.api<{ own: { primary_color: string; product_name: string } }>("GET", `/v1/tenants/${acme.id}/branding`, token);
    expect(branding.body.own).toMatchObject({ primary_color: "#7c2d12", product_name: "Acme Mail" });
    await context.close();
  });

  it("creates an API key shown once, which works until it is revoked", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, TENANT);
    await page.getByRole("link", { name: "API keys" }).click();
    await page.getByLabel("Name").fill("provisioning");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = (await page.getByTestId("api-key-secret").textContent())!;
    expect(secret.length).toBeGreaterThan(20);
    await screenshots(page, "tenant-key-shown-once");
    await page.getByRole("button", { name: "I have stored it" }).click();
    await expect.poll(() => page.getByTestId("api-key-secret").count()).toBe(0);
    await page.getByRole("cell", { name: "provisioning" }).first().waitFor();
    await checkView(page, "tenant-keys");
    // The page never shows the secret again.
    await page.reload();
    await page.getByRole("cell", { name: "provisioning" }).first().waitFor();
    expect(await page.content()).not.toContain(secret);

    const exchange = () =>
      fetch(`${caliop.base}/v1/auth/token`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ grant_type: "api_key", api_key: secret }) });
    expect((await exchange()).status).toBe(200);
    await page.getByRole("button", { name: "Revoke the key provisioning" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
    await page.getByText(/^Revoked /).waitFor();
    expect((await exchange()).status).toBe(401);
    await context.close();
  });

  it("shows billing with the provider none, and the rest of the tenant's views", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, TENANT);
    await page.getByRole("link", { name: "Billing" }).click();
    await page.getByTestId("provider-none").waitFor();
    await expect.poll(() => page.getByText("No subscription").isVisible()).toBe(true);
    await expect(page.getByRole("button", { name: "Pay by card" }).count()).resolves.toBe(0);
    await checkView(page, "tenant-billing");
    const token = await caliop.token(TENANT.address, TENANT.password);
    const tenants = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    const acme = tenants.body.items.find((x) => x.name === "Acme")!;
    const billing = await caliop.api<{ provider: string; status: string }>("GET", `/v1/tenants/${acme.id}/billing`, token);
    expect(billing.body).toMatchObject({ provider: "none", status: "none" });

    await page.getByRole("link", { name: "Confidentiality" }).click();
    await page.getByRole("heading", { name: "What your policy says" }).waitFor();
    await checkView(page, "tenant-policy");
    await page.getByRole("link", { name: "Audit log" }).click();
    await page.getByRole("cell", { name: "account.create" }).first().waitFor();
    await checkView(page, "tenant-audit");
    await page.getByRole("link", { name: "Overview" }).click();
    await page.getByRole("heading", { name: "Acme" }).waitFor();
    await checkView(page, "tenant-overview");
    await context.close();
  });

  it("exports the whole tenant behind a link that works once, and publishes its transparency report", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, TENANT);
    const token = await caliop.token(TENANT.address, TENANT.password);
    const tenants = await caliop.api<Page_<Tenant>>("GET", "/v1/tenants", operatorToken);
    const acme = tenants.body.items.find((x) => x.name === "Acme")!;
    const exports = () => caliop.api<Page_<{ id: string; state: string; bytes: number | null }>>("GET", `/v1/tenants/${acme.id}/exports`, token);

    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Data & transparency" }).click();
    await page.getByRole("heading", { level: 1, name: "Data & transparency" }).waitFor();
    const form = page.locator("form", { hasText: "Export everything" });
    const table = page.getByRole("table", { name: "Exports" });
    await table.getByText("No export yet.").waitFor();

    // The administrator's own password is asked again.
    await form.getByLabel("Your password").fill(TENANT.password);
    // Too short: the API refuses it (no check in the page does), and its words land next to the field.
    await form.getByLabel("Passphrase", { exact: true }).fill("too short");
    await form.getByLabel("Passphrase again").fill("too short");
    const refused = page.waitForResponse((r) => r.url().endsWith(`/v1/tenants/${acme.id}/export`) && r.request().method() === "POST");
    await form.getByRole("button", { name: "Start the export" }).click();
    expect((await refused).status()).toBe(422);
    await expect.poll(() => page.locator("#field-passphrase-error").textContent()).toBe("`passphrase` must be at least 12 characters long");
    await expect(form.getByLabel("Passphrase", { exact: true }).getAttribute("aria-invalid")).resolves.toBe("true");
    expect(await page.getByTestId("export-link").count()).toBe(0);
    // Not a key: said next to the key, by the API.
    await form.getByRole("radio", { name: /An OpenPGP public key/ }).check();
    await form.getByLabel("OpenPGP public key", { exact: true }).fill("not a key at all");
    await form.getByLabel("Your password").fill(TENANT.password);
    await form.getByRole("button", { name: "Start the export" }).click();
    await expect.poll(() => page.locator("#field-openpgp_public_key-error").textContent()).toContain("is not an armored OpenPGP public key");
    await form.getByRole("radio", { name: /A passphrase/ }).check();
    expect((await exports()).body.items).toEqual([]);

    const passphrase = "correct horse battery staple";
    await form.getByLabel("Passphrase", { exact: true }).fill(passphrase);
    await form.getByLabel("Passphrase again").fill(passphrase);
    await form.getByLabel("Your password").fill(TENANT.password);
    await form.getByRole("button", { name: "Start the export" }).click();
    const link = page.getByTestId("export-link");
    await link.waitFor();
    const url = (await link.textContent())!;
    expect(url.startsWith(`${caliop.base}/v1/exports/`)).toBe(true);
    expect(url).toMatch(/\/v1\/exports\/[0-9a-f-]{36}\/download\?token=[^&\s]+$/);
    await page.getByText("This link is shown only now").waitFor();
    await expect(page.getByRole("button", { name: "Copy: the download link" }).count()).resolves.toBe(1);

    // The list follows the export by itself until it is ready; nothing is clicked meanwhile.
    const newest = table.locator("tbody tr").first();
    await expect.poll(() => newest.locator(".badge").textContent(), { timeout: 20_000 }).toBe("Ready");
    await expect(newest.locator("td").nth(1).textContent()).resolves.toBe(TENANT.address);
    await expect(newest.locator("td").nth(4).textContent()).resolves.toMatch(/^[\d.,]+\s(bytes|kB|MB|GB)$/);
    await page.getByRole("link", { name: "Download now" }).waitFor();
    const listed = (await exports()).body.items;
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({ state: "ready" });
    expect(url).toContain(listed[0]!.id);
    await checkView(page, "tenant-data");

    // Once, without signing in; then never again.
    const first = await page.request.get(url);
    expect(first.status()).toBe(200);
    const archive = await first.body();
    expect(archive.length).toBe(listed[0]!.bytes);
    expect(archive.subarray(0, 14).toString("latin1")).toBe("CALIOP-ARCHIVE");
    const second = await page.request.get(url);
    expect(second.status()).toBe(404);
    expect((await exports()).body.items[0]).toMatchObject({ state: "downloaded" });
    await page.getByRole("button", { name: "Refresh" }).click();
    await expect.poll(() => newest.locator(".badge").textContent()).toBe("Downloaded");

    // The link lived only in the page: gone after a reload, and never stored.
    const secret = new URL(url).searchParams.get("token")!;
    await page.reload();
    await table.locator("tbody tr .badge", { hasText: "Downloaded" }).waitFor();
    expect(await page.getByTestId("export-link").count()).toBe(0);
    expect(await page.content()).not.toContain(secret);
    const stored = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }));
    expect(stored).not.toContain(secret);

    // Transparency: nothing yet, then one request without a legal basis. A
    // gagged one stays hidden from the tenant until its order ends.
    await page.getByTestId("transparency-empty").waitFor();
    const today = new Date().toISOString().slice(0, 10);
    const nextYear = `${new Date().getUTCFullYear() + 1}-12-31`;
    const scope = { tenant_id: acme.id, kinds: ["messages"] };
    const plain = await caliop.api("POST", "/v1/legal-requests", operatorToken, { authority: "Some police service", country: "FR", received_on: today, scope });
    expect(plain.status).toBe(201);
    const gagged = await caliop.api("POST", "/v1/legal-requests", operatorToken, { authority: "Another agency", country: "DE", received_on: today, scope, gag_until: nextYear });
    expect(gagged.status).toBe(201);
    await page.reload();
    const report = page.getByRole("table", { name: "Requests from courts and authorities, per quarter and country" });
    const row = report.locator("tbody tr");
    await expect.poll(() => row.count()).toBe(1);
    const quarter = `Q${Math.floor(new Date().getUTCMonth() / 3) + 1} ${new Date().getUTCFullYear()}`;
    await expect(row.getByRole("rowheader").textContent()).resolves.toBe(quarter);
    await expect(row.locator("td").allTextContents()).resolves.toEqual(["France (FR)", "1", "1", "0", "0", "0", "0", "0", "0"]);
    await expect(report.locator("tfoot td").allTextContents()).resolves.toEqual(["1", "1", "0", "0", "0", "0", "0", "0"]);
    expect(await page.getByTestId("transparency-empty").count()).toBe(0);

    // The switch publishes the report on the tenant's verified hostnames, and takes it back.
    const publish = page.getByRole("switch", { name: "Show this report publicly on your verified hostnames" });
    const published = async () => (await caliop.api<{ publish_transparency: boolean }>("GET", `/v1/tenants/${acme.id}`, token)).body.publish_transparency;
    expect(await publish.isChecked()).toBe(false);
    expect(await published()).toBe(false);
    await publish.click();
    await page.getByText("The report is now public on your verified hostnames.").waitFor();
    expect(await publish.isChecked()).toBe(true);
    expect(await published()).toBe(true);
    await checkView(page, "tenant-transparency");
    await publish.click();
    await page.getByText("The report is no longer public.").waitFor();
    expect(await publish.isChecked()).toBe(false);
    expect(await published()).toBe(false);
    await context.close();
  });

  it("follows the browser's language and switches on request", async () => {
    const { context, page } = await newPage(browser, "fr-FR");
    await page.goto(`${caliop.base}/admin/`);
    await page.getByRole("button", { name: "Se connecter" }).waitFor();
    await expect(page.evaluate(() => document.documentElement.lang)).resolves.toBe("fr");
    await page.getByRole("button", { name: "Switch to English" }).click();
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    await page.reload();
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    await context.close();
  });
});
